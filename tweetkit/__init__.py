"""tweetkit: one toolkit for building language models of social-media text."""

__version__ = "0.1.0"
