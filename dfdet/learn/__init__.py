"""Teaching material behind the Learn view and `dfdet inspect` / `dfdet geometry`: what LN-tuning
trains and how far it moved, the sphere the Norm methods live on, SLERP against LERP, and the
alignment/uniformity geometry. Library code: numbers and plotly figures, no UI."""
