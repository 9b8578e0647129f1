"""The plan: the TOML file read, checked and frozen before anything happens.

Owns the plan's model (``model``), its loading and cross-field rules (``load``), the file's
declared shape (``schema``), the rules for names (``names``), units (``units``) and prompt
templates (``prompts``). Reads files, never writes one; knows nothing of git, state or processes.
"""
