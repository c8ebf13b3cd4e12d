"""Worked examples on real models (the MiniLM demo)."""
