"""Virtual hardware behind the real seams, a traffic model, and the demo site."""
