"""Model quality: realized metrics from joined labels, an honest verdict, and estimates before
labels arrive."""
