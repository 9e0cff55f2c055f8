"""Training: the training loop, the classifier's training pieces, fine-tuning
on labels and the readers of training banks. Imports `glue_starclf.core` and
`glue_starclf.io`; ``python -m training`` is its command line.
"""

__all__ = []
