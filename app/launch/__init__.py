"""The only place that builds Ray Train/Tune objects, plus starting/joining Ray and naming runs."""
