"""The experiments behind the README's figures, one package each (`python -m bench.<name>`),
and the harness they share (bench/harness)."""
