"""Evolution on JSON genomes: the operators, the tasks' validated data, and LLM mode.

``operators`` is pure (a genome and a ``random.Random`` in, a genome out); ``params``
validates task data; ``llm_mode`` asks an LLM provider for offspring and falls back to
the operators. The executors that run them are in ``elastic.executors.evolution``.
"""
