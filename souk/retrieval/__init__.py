"""Recall: which documents are candidates for this query (BM25, dense vectors, fusion)?"""
