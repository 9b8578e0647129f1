"""What an attempt and a wave produced: the checks that confirm or overturn an agent's verdict
(``checks``) and, after each wave, overlaps between tasks and merges into the integration branch
(``integration``). Functions return what they found; the engine records it."""
