"""PPO on a Ray actor group: placement (group.py), model actors (actors.py), rollouts (rollout.py), the loop (driver.py)."""
