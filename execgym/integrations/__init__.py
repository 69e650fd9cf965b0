"""Adapters that let the trainers people use train on execgym envs; each module is behind its own extra.

* :mod:`execgym.integrations.trl`: TRL's ``GRPOTrainer(environment_factory=...)`` (extra ``trl``):
  ``environment_factory``, ``execgym_reward``, ``dataset``, ``environment_factories``, ``mixed_dataset``.
* :mod:`execgym.integrations.verifiers`: a verifiers multi-turn Environment (``load_environment``).
* :mod:`execgym.integrations.skyrl`: a skyrl-gym ``BaseTextEnv`` registered with ``skyrl_gym.make``.
* :mod:`execgym.integrations.verl`: an agent loop registered with verl's agent-loop registry.

Nothing is imported here: importing a module imports its trainer's package, which only its extra installs.
"""
