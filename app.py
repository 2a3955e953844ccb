"""Entry of the studio: navigation over the pages and the shared sidebar. Nothing else."""

import streamlit as st

import ui

st.set_page_config(page_title="ML Studio", page_icon=":material/sports_basketball:", layout="wide")

navigation = st.navigation(
    [
        st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
        st.Page("pages/data.py", title="Data", icon=":material/table_chart:"),
    ]
)
try:
    navigation.run()
finally:  # after the page, so the sidebar counts what the page just stored (also after st.stop)
    ui.sidebar_status()
