"""An example face-anon-redteam plugin: `example_posterize` (a method) and `example_unsharp` (an attack)."""
