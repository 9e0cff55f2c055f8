"""Command-line training module of glue-starclf (``python -m training``)."""
