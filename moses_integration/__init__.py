"""Moses integration, built on rescorer: moses.ini, n-best lists, phrase-table tools, a decoder, MERT,
the baseline pipeline, and the Moses side of the rescorer program (cli.py)."""
