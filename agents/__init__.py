"""Learners behind one interface (installed as ``devlearn.agents``)."""
