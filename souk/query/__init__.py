"""Query understanding: what does the user mean by this query string?"""
