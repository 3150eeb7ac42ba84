"""Vocabulary extension: find new words, make each one token, initialise and train their rows."""
