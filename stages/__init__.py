"""The post-training stages. Each is a thin composition of the engine, registered in posttrain.stagekit.

`posttrain.stagekit` holds the stage interface, the registry (`stage_names`, `get_stage`, `register_stage`) and
the pipeline order. Stage modules are imported on first use, so checking a command line stays fast.
"""
