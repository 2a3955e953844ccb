"""Entry of the studio: navigation over the pages and the shared sidebar. Nothing else."""

import streamlit as st

import ui
from core.settings import harden_process

harden_process()  # what the studio writes is private to the user (umask 077, workspace 0700); logs redacted
st.set_page_config(page_title="ML Studio", page_icon=":material/sports_basketball:", layout="wide")

navigation = st.navigation(
    [
        st.Page("app_pages/home.py", title="Home", icon=":material/home:", default=True),
        st.Page("app_pages/data.py", title="Data", icon=":material/table_chart:"),
        st.Page("app_pages/train.py", title="Train", icon=":material/model_training:"),
        st.Page("app_pages/models.py", title="Models", icon=":material/inventory_2:"),
        st.Page("app_pages/score.py", title="Score", icon=":material/batch_prediction:"),
        st.Page("app_pages/monitor.py", title="Monitor", icon=":material/monitoring:"),
        st.Page("app_pages/predict.py", title="Predict", icon=":material/bolt:"),
    ]
)
ui.sidebar_status()  # pages rerun after changing the workspace, so the counts stay true
navigation.run()
