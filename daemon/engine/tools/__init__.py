"""Tools an agent node offers its model: command tools declared in the pipeline or settings."""
