"""Repository-wide pytest settings."""

import importlib.util

# Bundled task repositories carry their own tests: they are task data, run inside sandboxes, never here.
collect_ignore_glob = ["execgym/assets/*"]
# An adapter module imports its trainer at the top: without that package, its doctests are not collected (its
# tests in tests/integrations skip with the reason).
collect_ignore = [f"execgym/integrations/{name}.py" for name, package in
                  {"verl": "verl", "skyrl": "skyrl_gym", "trl": "trl", "verifiers": "verifiers"}.items()
                  if importlib.util.find_spec(package) is None]
