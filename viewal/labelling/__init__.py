"""Labelling with people: region queries out as files (PNG, COCO, Label Studio) and labels back in, the
loop that runs one cycle at a time, a scripted labeller, and the Label Studio ML backend."""
