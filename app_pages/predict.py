"""Predict: one prediction from a form, and the REST endpoint that serves the champion."""

import streamlit as st

import ui
from core import explain, model_flavor, predict, registry, serving
from core.errors import NotFoundError

ui.intro(
    "Predict",
    "Ask a registered model about one case: fill in the form (it starts from typical training values) and see "
    "the prediction, how much each value raised or lowered it, and where each value lies among the training data.",
    "app_pages/monitor.py", "predictions made here are watched for drift on the Monitor page",
)
settings = ui.settings()
WHY_MISSING = "To see why a model predicts what it does, retrain it on the Train page and register the new version."


def rest_panel(model, values: dict) -> None:
    st.subheader("REST endpoint", anchor=False)
    state = serving.read_state(settings) or {}
    base = state.get("url", serving.url())
    up = serving.ping(base)
    if up and state:
        st.success(f"Up at {base}, serving {ui.md(state['name'])} version {state['version']} ({state['alias']}).")
    elif up:
        st.success(f"Up at {base}.")
    else:
        st.warning(f"No model server answers at {base}. Start one in a terminal with `make serve MODEL={model.name}` "
                   "(it serves the champion on port 5001). Predictions on this page work without it.")
    with ui.guarded("reading what the model answers over REST"):
        answer = model_flavor.rest_answer(settings, model)
        (st.info if answer.attention else st.caption)(ui.md(answer.sentence))
    columns = list(model.features)
    row = [values[c] for c in columns]
    st.caption("The same prediction from any program (MLflow's dataframe_split format):")
    st.code(serving.curl_example(base, columns, row), language="bash")
    with st.expander("Try a request"):
        body = st.text_area("Request body (JSON)", value=serving.payload(columns, [row]), key="predict.rest.body", height=120)
        if st.button("Send", key="predict.rest.send", disabled=not up):
            status, text = serving.invoke(base, body)
            if status == 200:
                st.success("HTTP 200: the server answered with these predictions.")
                st.dataframe(serving.answer_table(text), hide_index=True)
            elif status == 0:
                st.error(f"The server could not be reached ({ui.md(text)}).")
            else:
                st.error(f"HTTP {status}: the server refused the request. Its answer:")
                st.code(text)


def why_panel(why: dict, key: str) -> None:
    """Each input's contribution to this prediction (ui.explanation_panel)."""
    st.subheader("Why this prediction", anchor=False)
    ui.explanation_panel(explain.Explanation.from_dict(why), key)


def decided(last: dict, model) -> str:
    """Why the prediction is this class: its probability against the cut-off stored on the version
    (when the prediction was made), or the likelier class; and whether that rule has changed since."""
    from core.registry import Cutoff

    used = Cutoff(**last["cutoff"]) if last.get("cutoff") else None
    target = f"{model.target} = " if model.target else ""
    p = last["probabilities"].get(used.positive) if used is not None else None
    if p is not None:
        side = "at least" if p is not None and p >= used.value else "below"
        said = (f"Predicted {target}{last['prediction']} because the probability of {used.positive}, {p:.1%}, is {side} "
                f"the cut-off {used.shown} stored on version {model.version}. {used.sentence(model.target)}")
    else:
        said = (f"Predicted {target}{last['prediction']}, the likelier class: no cut-off is stored on version "
                f"{model.version}, so the class with the highest probability wins.")
    now = model.cutoff
    if not registry.Cutoff.same_rule(now, used):
        said += " The cut-off of this version has changed since this prediction: press Predict again to use it."
    return said


def render() -> None:
    view = None
    with ui.guarded("reading the model registry"):
        view = ui.model_picker("predict")
    if view is None:
        return
    loaded = None
    with ui.guarded("loading the model"):
        # the cut-off as the picker just read it: it can move while the loaded model stays cached
        loaded = ui.scoring_model(settings.tracking_uri, view.name, view.version, cutoff=view.cutoff)
    if loaded is None:
        return
    model, pipeline, profile = loaded
    fields = None
    with ui.guarded("building the form"):
        fields = predict.form_spec(model, profile)
    if fields is None:
        return
    if model.task == "classification":
        st.caption(ui.md(ui.prediction_rule(model.cutoff, model.version, model.target)))
    values = {}
    with st.form(f"predict.form.{model.name}.{model.version}"):
        columns = st.columns(3)
        for k, f in enumerate(fields):
            key = f"predict.field.{model.name}.{model.version}.{f.name}"
            with columns[k % 3]:
                if f.kind == "toggle":
                    values[f.name] = st.toggle(f.name, value=bool(f.default), key=key)
                elif f.kind == "integer":
                    values[f.name] = st.number_input(f.name, value=int(f.default), step=1, help=f.hint, key=key)
                elif f.kind == "number":
                    values[f.name] = st.number_input(f.name, value=float(f.default), help=f.hint, key=key, format="%g")
                else:
                    values[f.name] = st.selectbox(f.name, f.choices or ("",), help=f.hint, key=key)
        submitted = st.form_submit_button("Predict", type="primary", icon=":material/bolt:")
    values = {f.name: (1 if values[f.name] is True else 0 if values[f.name] is False else values[f.name]) for f in fields}
    if submitted:
        predicted = False
        with ui.guarded("predicting"):
            result = predict.predict_one(model, pipeline, values, fields)
            predict.record_online(settings, model, values, result)
            st.session_state["predict.last"] = {"prediction": result.prediction, "probabilities": result.probabilities,
                                                "outside": result.outside, "values": values, "model": f"{model.name}/{model.version}",
                                                "cutoff": result.cutoff.to_dict() if result.cutoff else None}
            predicted = True
        if predicted:  # explained apart: a model that cannot be explained still predicts
            with ui.guarded("explaining the prediction"):
                try:
                    background = ui.explanation_background(settings.tracking_uri, model.name, model.version)
                except NotFoundError as exc:  # a version trained before the studio kept its training rows
                    st.session_state["predict.last"]["why_missing"] = str(exc)
                else:
                    st.session_state["predict.last"]["why"] = predict.explain_one(model, pipeline, values, fields, background).to_dict()
    last = st.session_state.get("predict.last")
    if last and last["model"] == f"{model.name}/{model.version}":
        st.subheader(f"Prediction: {ui.md(last['prediction'])}", anchor=False)
        if last["probabilities"]:
            columns = st.columns(len(last["probabilities"]))
            for column, (label, p) in zip(columns, last["probabilities"].items(), strict=True):
                column.metric(f"Probability of {label}", f"{p:.1%}")
            st.info(ui.md(decided(last, model)), icon=":material/rule:")
        for sentence in last["outside"]:
            st.warning(ui.md(sentence), icon=":material/warning:")
        if last.get("why"):
            why_panel(last["why"], key=f"predict.why.{model.name}.{model.version}")
        elif last.get("why_missing"):
            st.subheader("Why this prediction", anchor=False)
            st.info(f"{ui.md(last['why_missing'])} {WHY_MISSING}", icon=":material/info:")
        if profile is not None:
            st.caption("Where each value lies among the training rows (red: the bin or category of the value entered).")
            columns = st.columns(3)
            for k, f in enumerate(fields):
                columns[k % 3].plotly_chart(predict.value_figure(profile.features.get(f.name), f.name, last["values"][f.name]),
                                            key=f"predict.value.{f.name}")
    st.divider()
    rest_panel(model, values)


render()
