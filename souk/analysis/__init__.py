"""Analysis: how does raw text become the tokens that index and query share?"""
from souk.analysis.registry import Analyzer, analyzer_names, get_analyzer
from souk.analysis.normalize import normalize

__all__ = ["Analyzer", "analyzer_names", "get_analyzer", "normalize"]
