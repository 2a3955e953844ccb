"""Entry of the studio: navigation over the pages and the shared sidebar. Nothing else."""

import streamlit as st

import ui

st.set_page_config(page_title="ML Studio", page_icon=":material/sports_basketball:", layout="wide")

navigation = st.navigation(
    [
        st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
        st.Page("pages/data.py", title="Data", icon=":material/table_chart:"),
        st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
        st.Page("pages/models.py", title="Models", icon=":material/inventory_2:"),
    ]
)
ui.sidebar_status()  # pages rerun after changing the workspace, so the counts stay true
navigation.run()
