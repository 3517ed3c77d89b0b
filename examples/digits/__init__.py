"""The demo's training job: a small neural network on scikit-learn's digits data set."""
