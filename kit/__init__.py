"""kit — a Kaggle submission kit for Digit Recognizer (competition slug `digit-recognizer`)."""

__version__ = "0.1.0"
