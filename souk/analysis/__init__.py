"""Analysis: how does raw text become the tokens that index and query share?"""
from souk.analysis.registry import ANALYZERS, Analyzer, get_analyzer
from souk.analysis.normalize import normalize

__all__ = ["ANALYZERS", "Analyzer", "get_analyzer", "normalize"]
