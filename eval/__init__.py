"""Evaluation: metrics as small pure functions (ROUGE/BLEU the evalscope and LLaMA-Factory way,
SQuAD EM/F1, retrieval hit@k/MRR/nDCG), file readers, error analysis and run reports.

Builds on retrieval/ only; the runs that need a knowledge base live in app/evaluation.py.
"""
