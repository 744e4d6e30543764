"""The native API's face: its protocol (request and response models) and its routes."""
