"""Clinical prompts: one scenario, several questions -> a summary plus an answer to each question."""
