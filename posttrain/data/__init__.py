"""SFT data: file sources, builtin generated tasks with oracle answers, answer-preserving trimming."""
