"""Estimating a noisesim data card from a camera's flat and dark frames (../shared/DESIGN.md §2–3)."""
