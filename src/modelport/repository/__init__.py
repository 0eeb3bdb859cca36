"""The model repository: named models, numbered immutable versions, aliases, tags."""
