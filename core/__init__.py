"""UI-free logic of the studio. Never imports streamlit; everything here runs headless."""
