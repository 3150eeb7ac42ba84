"""Knowledge-base retrieval: BM25 (bm25s), dense (sentence-transformers), hybrid via reciprocal rank fusion."""
