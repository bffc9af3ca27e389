"""synthscan: synthetic whole-body bone scintigraphy for nuclear-medicine AI research."""

__version__ = "0.1.0"
