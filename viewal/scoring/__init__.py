"""What the model and the 3D views say about each region: the scorers (:mod:`viewal.scoring.scorers`), what
they need (:mod:`~viewal.scoring.needs`), scoring the pool scene by scene here or on Ray
(:mod:`~viewal.scoring.executors`), and 3D label propagation (:mod:`~viewal.scoring.propagation`)."""
