"""The Gradio frontend: the app, its rendering, the background training job."""
