"""The ttkbootstrap UI: one module per screen, and the tray. The only package that imports tkinter."""
