"""Ranking: in what order should the candidates be shown (pipelines of recall, fusion and rerank stages)?"""
