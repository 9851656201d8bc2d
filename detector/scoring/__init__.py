"""Adapters from closed windows (`windows`), metric points (`series`) and sessions (`sessions`) to
the models' one judge, with the explanations a person reads."""
