"""Moses integration: moses.ini, n-best lists, phrase-table tools, a decoder and MERT (issue 3)."""
