"""Models: the registry. Versions with their lineage and metrics, champion / challenger aliases,
promotion with a side-by-side check, comparison, the cut-off stored on a version (with its history),
descriptions, tags and deletion."""


import streamlit as st

import ui
from core import decisions, metrics, registry
from ui import Keys

next_slot = ui.intro(
    "Models",
    "Every model you registered and its versions: compare them and choose the **champion** (the version used "
    "for scoring) and the **challenger** (the one being tried).",
    "app_pages/score.py", "score a production file with the champion on the Score page",
)
ui.show_flash()
settings = ui.settings()


def badges(aliases) -> str:
    colours = {"champion": "green", "challenger": "orange"}
    return " ".join(f":{colours.get(a, 'blue')}-badge[{a}]" for a in aliases)  # aliases are checked: [A-Za-z0-9_-]


def versions_table(model):
    import pandas as pd

    rows = []
    for v in model.versions:
        cutoff = getattr(v, "cutoff", None)
        row = {"version": v.version, "aliases": ", ".join(v.aliases),
               "cut-off": f"{cutoff.shown} (class {cutoff.positive})" if cutoff else "likelier class" if v.task == "classification" else "",
               "algorithm": v.algorithm or "",
               "training table": v.table_name or "", "table hash": (v.table_digest or "")[:12]}
        for key in metrics.ranked():  # each task's metrics, its primary one first
            if key in v.metrics:
                row[metrics.label(key)] = round(v.metrics[key], 3)
        row["created"] = ui.when(v.created)
        row["description"] = v.description
        row["tags"] = ", ".join(f"{k}={x}" for k, x in v.tags.items() if not k.startswith("studio."))
        row["run"] = v.run_id or ""
        rows.append(row)
    return pd.DataFrame(rows)


def register_panel(names: list[str]) -> None:
    with st.expander("Register a training run's model", expanded=not names):
        st.caption("Paste the run id of one trained model (the Train page shows it under each model's charts; MLflow shows it too).")
        with st.form("models.register", border=False):
            run_id = st.text_input("Run id", key="models.register.run")
            c1, c2 = st.columns(2)
            name = c1.text_input("Model name (new or existing)", value=names[0] if names else "", key="models.register.name")
            alias = c2.selectbox("Alias", ["(none)", "champion", "challenger"], key="models.register.alias")
            if st.form_submit_button("Register", type="primary"):
                with ui.guarded("registering the model"):
                    done = registry.register(settings, run_id.strip(), name.strip(), alias=None if alias == "(none)" else alias)
                    st.session_state[Keys.MODEL] = done.name
                    ui.flash("success", f"Registered version {done.version} of '{ui.md(done.name)}'.")
                    st.rerun()


def aliases_tab(model) -> None:
    versions = [v.version for v in model.versions]
    st.markdown("**Point an alias at a version**")
    c1, c2, c3 = st.columns([1, 1, 1])
    version = c1.selectbox("Version", versions, key=f"models.alias.version.{model.name}")
    alias = c2.selectbox("Alias", ["champion", "challenger", "other..."], key=f"models.alias.name.{model.name}")
    if alias == "other...":
        alias = c3.text_input("Alias name", key=f"models.alias.custom.{model.name}", help="Letters, digits, _ or -; no spaces.")
    if st.button("Set alias", key=f"models.alias.set.{model.name}"):
        with ui.guarded("setting the alias"):
            moved = registry.set_alias(settings, model.name, version, alias.strip())
            note = f" (moved from version {moved.from_version})" if moved.from_version else ""
            ui.flash("success", f"{ui.md(moved.alias)} now points at version {moved.version}{note}.")
            st.rerun()
    if model.aliases:
        st.markdown("**Remove an alias**")
        r1, r2 = st.columns([2, 1])
        gone = r1.selectbox("Alias to remove", sorted(model.aliases), key=f"models.alias.remove.{model.name}",
                            format_func=lambda a: f"{a} (version {model.aliases[a]})")
        if r2.button("Remove", key=f"models.alias.remove.go.{model.name}"):
            with ui.guarded("removing the alias"):
                registry.remove_alias(settings, model.name, gone)
                ui.flash("success", f"Removed the alias {ui.md(gone)}.")
                st.rerun()

    st.markdown("**Promote the challenger**")
    challenger = model.aliases.get("challenger")
    champion = model.aliases.get("champion")
    if challenger is None:
        st.caption("No version is the challenger. Set the challenger alias on the version you want to try.")
        return
    confirm_key = f"models.promote.confirm.{model.name}"
    if not st.session_state.get(confirm_key):
        if st.button(f"Promote version {challenger} to champion", type="primary", key=f"models.promote.{model.name}"):
            st.session_state[confirm_key] = challenger  # the version the person saw
            st.rerun()
        return
    with st.container(border=True):
        by_version = {v.version: v for v in model.versions}
        pair = [by_version[challenger]] + ([by_version[champion]] if champion in by_version else [])
        if champion is None:
            st.markdown(f"Version {challenger} becomes the champion (there is none yet).")
        else:
            st.markdown(f"Version {challenger} (challenger) replaces version {champion} (champion). Check their holdout metrics:")
        st.caption(ui.md(" ".join(f"Version {v.version} predicts with {rule_of(v)}." for v in pair)))
        table, best = registry.compare_table(pair)
        show_metrics(table, best)
        yes, no = st.columns(2)
        if yes.button("Yes, promote", type="primary", key=f"models.promote.yes.{model.name}"):
            with ui.guarded("promoting the challenger"):
                done = registry.promote(settings, model.name, expected=st.session_state[confirm_key])
                st.session_state.pop(confirm_key, None)
                ui.flash("success", promoted(model, done))
                st.rerun()
        if no.button("Cancel", key=f"models.promote.no.{model.name}"):
            st.session_state.pop(confirm_key, None)
            st.rerun()


def show_metrics(table, best) -> None:
    """Metrics per version with the best of each row highlighted."""
    if table.empty:
        st.caption("These versions have no recorded metrics.")
        return
    shown = table.assign(metric=table["metric"].map(metrics.label))
    winners = {metrics.label(k): f"v{v}" for k, v in best.items()}
    style = shown.style.apply(
        lambda row: ["font-weight: bold; background-color: #DCEFD9" if c == winners.get(row["metric"]) else "" for c in row.index],
        axis=1,
    )
    st.dataframe(style.format(precision=3, na_rep=""), hide_index=True)
    st.caption("Highlighted: the best version for that metric (lowest log loss or error, highest score).")


def compare_tab(model) -> None:
    versions = [v.version for v in model.versions]
    if len(versions) < 2:
        st.info("Register a second version to compare it with this one.")
        return
    default = [v for v in (model.aliases.get("champion"), model.aliases.get("challenger")) if v is not None]
    if len(default) < 2:
        default = versions[:2]
    chosen = st.multiselect("Versions to compare", versions, default=default, key=f"models.compare.{model.name}")
    if len(chosen) < 2:
        st.caption("Choose at least two versions.")
        return
    by_version = {v.version: v for v in model.versions}
    picked = [by_version[v] for v in chosen]
    mixed = registry.incomparable(picked)
    if mixed:
        st.warning(ui.md(mixed), icon=":material/warning:")
        return
    table, best = registry.compare_table(picked)
    show_metrics(table, best)
    with ui.guarded("drawing the comparison"):
        st.plotly_chart(registry.compare_figure(settings, picked), key=f"models.compare.fig.{model.name}")
    diff = registry.diff_params(picked)
    st.markdown("**What differs between them**")
    if diff.empty:
        st.caption("Same algorithm, settings and training table.")
    else:
        st.dataframe(diff, hide_index=True)


def edit_tab(model) -> None:
    versions = {v.version: v for v in model.versions}
    version = st.selectbox("Version", list(versions), key=f"models.edit.version.{model.name}")
    view = versions[version]
    with st.form(f"models.edit.{model.name}.{version}", border=False):
        description = st.text_area("Description", value=view.description, key=f"models.edit.desc.{model.name}.{version}")
        c1, c2 = st.columns(2)
        tag_key = c1.text_input("Add or change a tag: name", key=f"models.edit.tagkey.{model.name}.{version}")
        tag_value = c2.text_input("value", key=f"models.edit.tagvalue.{model.name}.{version}")
        user_tags = [k for k in view.tags if not k.startswith("studio.")]
        remove = st.multiselect("Remove tags", user_tags, key=f"models.edit.tagremove.{model.name}.{version}")
        if st.form_submit_button("Save"):
            with ui.guarded("saving the description and tags"):
                registry.update_version(settings, model.name, version, description=description,
                                        set_tags={tag_key: tag_value} if tag_key.strip() else None, delete_tags=remove)
                ui.flash("success", f"Saved version {version}.")
                st.rerun()
    st.divider()
    st.markdown(f"**Delete version {version}**")
    if view.aliases:
        st.caption(f"Version {version} is the {', '.join(view.aliases)}: move the alias to another version before deleting it.")
        return
    typed = st.text_input(f"Type {model.name}/{version} to confirm", key=f"models.delete.confirm.{model.name}.{version}")
    if st.button("Delete this version", icon=":material/delete:", disabled=typed.strip() != f"{model.name}/{version}",
                 key=f"models.delete.{model.name}.{version}"):
        with ui.guarded("deleting the version"):
            registry.delete_version(settings, model.name, version, confirm=typed)
            ui.flash("success", f"Deleted version {version} of '{ui.md(model.name)}'.")
            st.rerun()


def rule_of(view) -> str:
    """What a version predicts with, in a few words: its stored cut-off, or the likelier class."""
    return registry.Cutoff.named(None if view is None else view.cutoff)


def promoted(model, done) -> str:
    """The sentence after a promotion: which version scores now, and with which rule (a cut-off belongs
    to its version, so promoting can change the rule scoring and REST use)."""
    by_version = {v.version: v for v in model.versions}
    new, old = by_version.get(done.champion), by_version.get(done.previous_champion)
    was = "" if done.previous_champion is None else f" (it was version {done.previous_champion})"
    sentence = f"Version {done.champion} is now the champion{was}. It predicts with {rule_of(new)}"
    if old is not None and rule_of(old) != rule_of(new):
        sentence += f"; version {old.version} predicted with {rule_of(old)}. Scoring and Predict use the new rule now, a " \
                    "REST server once restarted"
    return sentence + ". The tab *Alias history and cut-offs* below records it."


def champion_vs_challenger(model) -> None:
    """Champion and challenger scored on the same labelled rows (the latest batch with its actual outcomes),
    measure by measure with the better one marked, and one button to promote the challenger."""
    from core import retraining
    from core.errors import NotFoundError

    champion, challenger = model.aliases["champion"], model.aliases["challenger"]
    st.subheader("Champion vs challenger", anchor=False)
    found = None
    with ui.guarded("comparing champion and challenger"), st.spinner("Scoring the same labelled rows with both versions..."):
        try:
            found = retraining.compare(settings, model.name)
        except NotFoundError as exc:
            st.info(f"{ui.md(exc)} Until then, compare their holdout metrics in the tab *Compare versions* below.",
                    icon=":material/info:")
    if found is not None:
        st.markdown(ui.md(found.source))
        names = {"champion": f"champion (version {found.champion_version})",
                 "challenger": f"challenger (version {found.challenger_version})"}
        # a difference that the three decimals shown cannot tell is no difference to the reader
        better = {r.metric: r.better if metrics.fmt(r.metric, r.champion) != metrics.fmt(r.metric, r.challenger) else None
                  for r in found.rows_by_metric}
        rows = [{"measure": r.label, names["champion"]: metrics.fmt(r.metric, r.champion),
                 names["challenger"]: metrics.fmt(r.metric, r.challenger),
                 "better": f"{better[r.metric]} ✓" if better[r.metric] else "level", "direction": r.direction}
                for r in found.rows_by_metric]
        st.dataframe(rows, hide_index=True)
        by_version = {v.version: v for v in model.versions}
        st.caption(ui.md(" ".join(f"The {role} (version {number}) predicts with {rule_of(by_version.get(number))}."
                                  for role, number in (("champion", found.champion_version),
                                                       ("challenger", found.challenger_version)))))
        label, winner = metrics.label(found.primary), better.get(found.primary)
        if winner == "challenger":
            st.success(f"The challenger is better on {label} ({metrics.direction(found.primary)}), the measure that ranks "
                       "models. Promote it to make it the version that scores.", icon=":material/thumb_up:")
        elif winner == "champion":
            st.warning(f"The champion is better on {label} ({metrics.direction(found.primary)}), the measure that ranks models: "
                       "keeping it is the safer choice.", icon=":material/thumb_down:")
        else:
            st.info(f"Champion and challenger are level on {label}, the measure that ranks models: compare the other measures.")
    wins = found is not None and better.get(found.primary) == "challenger"
    if st.button("Promote the challenger", type="primary" if wins else "secondary", icon=":material/military_tech:", key=f"models.cvc.promote.{model.name}.{challenger}",
                 help=f"Version {challenger} becomes the champion (the version used for scoring) and version {champion} "
                      "stops being it. The alias history records who did it and when."):
        with ui.guarded("promoting the challenger"):
            done = registry.promote(settings, model.name, expected=challenger)
            ui.flash("success", promoted(model, done))
            st.rerun()


def cutoff_tab(model) -> None:
    """A version's cut-off chart on its holdout rows (and what mistakes cost), the cut-off stored on
    it (store one, remove it, its history), the metrics at that cut-off apart from AUC and log loss, gain and lift."""
    versions = {v.version: v for v in model.versions if v.run_id}
    if not versions:
        st.caption("No version has a training run to chart.")
        return
    champion = model.aliases.get("champion")
    order = list(versions)
    c1, c2, c3, c4 = st.columns(4)
    version = c1.selectbox("Version", order, index=order.index(champion) if champion in versions else 0,
                           key=f"models.cut.version.{model.name}")
    view = versions[version]
    if view.task and view.task != "classification":
        st.caption(f"Version {version} predicts a number: a cut-off, gain and lift are for classification models.")
        return
    stored = view.cutoff
    key = f"models.cut.{model.name}.{version}"
    stored_cutoff(model, view)
    if stored is not None:
        today = f"The green line on the chart is the cut-off {stored.shown} stored on version {version}."
    else:
        today = "The dashed line on the chart is the usual 0.5: what scoring uses while no cut-off is stored."
    ui.decision_charts(view.run_id, key, [c2, c3, c4], stored=stored, today=today,
                       store=lambda found: store_cutoff(model, view, found, key))
    cutoff_history(model, version)


def stored_cutoff(model, view) -> None:
    """What version ``view`` predicts with: the cut-off stored on it (who set it, when) and a way to
    remove it, or the likelier class."""
    stored = view.cutoff
    if stored is None:
        st.info(f"**No cut-off is stored on version {view.version}.** Scoring, Predict and REST predict the likelier "
                "class: a row is positive when its probability is above 0.5. Below, see what another cut-off would do "
                "and store it.", icon=":material/tune:")
        return
    with st.container(border=True):
        st.markdown(f":green-badge[stored cut-off] **Version {view.version} predicts at the cut-off {stored.shown}.** "
                    f"{ui.md(stored.sentence(view.target))} Scoring and Predict use it; a REST server uses it from "
                    "its next start.")
        if st.button(f"Remove the cut-off of version {view.version}", icon=":material/delete:",
                     key=f"models.cut.remove.{model.name}.{view.version}",
                     help="The version then predicts the likelier class again (positive above 0.5). The history records it."):
            with ui.guarded("removing the cut-off"):
                registry.set_cutoff(settings, model.name, view.version, None)
                ui.flash("success", f"Removed the cut-off {stored.shown} of version {view.version}: it predicts the "
                                    "likelier class again (positive above 0.5).")
                st.rerun()


def store_cutoff(model, view, found, key: str) -> None:
    """Store a cut-off on the version: the one with the lowest expected cost (when costs are given),
    or a value typed; what it would do on the holdout rows is said before the button."""
    with ui.guarded("offering a cut-off to store"):
        _store_cutoff(model, view, found, key)


def _store_cutoff(model, view, found, key: str) -> None:
    if found.at_cutoff is None:  # more than two classes: the likelier class, nothing to store
        return
    stored = view.cutoff
    positive = f"{view.target} = {found.positive}" if view.target else f"class {found.positive}"
    st.markdown(f"**Store a cut-off on version {view.version}**")
    c1, c2 = st.columns([2, 1])
    how = "typed"
    if found.choice is not None:  # with costs, the cheapest cut-off is offered first
        # labels that do not change with the costs: a radio whose labels change can show no choice in the browser
        labels = {"cheapest": "the one with the lowest cost", "typed": "a value I choose"}
        how = c1.radio("Cut-off to store", list(labels), format_func=labels.get, horizontal=True, key=f"{key}.how")
    else:
        c1.caption("Give the cost of a false alarm and of a missed positive above to be offered the cut-off that costs "
                   "least, or type the cut-off to store.")
    if how == "cheapest" and not found.choice.storable:  # flagging nobody is cheapest, and no cut-off up to 1 does
        st.info(ui.md(found.choice.note), icon=":material/info:")
        return
    if how == "cheapest":
        value = found.choice.shown
    else:
        value = c2.number_input("Cut-off (0 to 1)", 0.0, 1.0, stored.value if stored else 0.5, step=0.01, format="%g",
                                key=f"{key}.value")
    at = found.at(value)
    precision = "no row would be predicted positive" if at.tp + at.fp == 0 else f"precision {at.precision:.3f}"
    st.caption(f"At {decisions.cutoff_text(value)} on the {at.rows:,} holdout rows: {at.share_positive:.1%} of the rows predicted "
               f"{ui.md(positive)}, {precision}, recall {at.recall:.3f}, accuracy {at.accuracy:.3f}.")
    same = stored is not None and stored.value == value and stored.positive == found.positive
    if same:
        st.caption(f"{decisions.cutoff_text(value)} is the cut-off stored on version {view.version} now.")
    if st.button(f"Use cut-off {decisions.cutoff_text(value)} for version {view.version}", type="primary", icon=":material/check:",
                 disabled=same, key=f"{key}.store",
                 help="Scoring, Predict and REST then predict the positive class when its probability is at least "
                      "this cut-off. The history records who changed it and when."):
        with ui.guarded("storing the cut-off"):
            done = registry.set_cutoff(settings, model.name, view.version, value, positive=found.positive)
            was = f"it was {decisions.cutoff_text(done.from_value)}" if done.from_value is not None else "it predicted the likelier class before"
            ui.flash("success", f"Version {view.version} now predicts {ui.md(positive)} when its probability of "
                                f"{ui.md(done.positive)} is at least {decisions.cutoff_text(done.value)} ({was}). Scoring and Predict use it "
                                "from now on; a REST server started before uses it once restarted.")
            st.rerun()


def cutoff_change(h: dict) -> str:
    """One cut-off entry of the model's history in words: set, moved or removed, for which class."""
    def value(v):
        return "the likelier class" if v is None else decisions.cutoff_text(v)

    positive = h.get("positive")
    of = f" (positive class {positive})" if positive not in (None, "") else ""
    if h.get("cutoff") is None:
        return f"cut-off removed: {value(h.get('from_cutoff'))} → the likelier class"
    if h.get("from_cutoff") is None:
        return f"cut-off set: the likelier class → {value(h.get('cutoff'))}{of}"
    return f"cut-off moved: {value(h.get('from_cutoff'))} → {value(h.get('cutoff'))}{of}"


def cutoff_history(model, version: int) -> None:
    changes = [h for h in getattr(model, "cutoff_history", []) if h.get("version") == version]
    if not changes:
        return
    with st.expander(f"History of the cut-off of version {version} ({ui.plural(len(changes), 'change')})"):
        st.dataframe([{"when": ui.when(h.get("at", "")), "who": h.get("by", ""), "what": cutoff_change(h)}
                      for h in reversed(changes)], hide_index=True)


def history_tab(model) -> None:
    """Alias moves and cut-off changes, newest first, in one table."""
    entries = sorted([*model.history, *getattr(model, "cutoff_history", [])], key=lambda h: str(h.get("at", "")))
    if not entries:
        st.caption("No alias or cut-off has been set yet.")
        return
    rows = []
    for h in reversed(entries):
        if h.get("action") == registry.CUTOFF_ACTION:
            of, what = f"cut-off of version {h.get('version')}", cutoff_change(h)
        else:
            change = {"set": f"→ version {h.get('version')}", "moved": f"version {h.get('from_version')} → version {h.get('version')}",
                      "promoted": f"version {h.get('from_version')} → version {h.get('version')}" if h.get("from_version")
                      else f"→ version {h.get('version')}",
                      "removed": f"removed from version {h.get('from_version')}"}.get(h.get("action"), "")
            of, what = f"alias {h.get('alias', '')}", f"{h.get('action', '')}: {change}"
        rows.append({"when": ui.when(h.get("at", "")), "who": h.get("by", ""), "of": of, "what": what})
    st.dataframe(rows, hide_index=True)


def render() -> None:
    models = None
    with ui.guarded("reading the model registry"):
        models = registry.list_models(settings)
    if models is None:  # the store could not be read; the message is on the page
        return
    names = [m.name for m in models]
    register_panel(names)
    if not models:
        st.info("No model is registered yet. Train models on the Train page, then register the one to keep.")
        st.page_link("app_pages/train.py", label="Go to the Train page", icon=":material/arrow_forward:")
        return
    linked = st.query_params.get("model")
    if linked in names and st.session_state.get("models.linked") != linked:
        st.session_state["models.linked"] = linked  # the link names the model once; the user may change it
        st.session_state["models.pick"] = linked
    current = st.session_state.get(Keys.MODEL)
    name = st.selectbox("Registered model", names, index=names.index(current) if current in names else 0, key="models.pick",
                        on_change=lambda: st.query_params.update(model=st.session_state["models.pick"]))
    st.session_state[Keys.MODEL] = name
    ui.next_link(next_slot, "app_pages/score.py", "score a production file with this model's champion on the Score page",
                 {"model": name})
    model = models[names.index(name)]
    st.subheader(ui.md(model.name), anchor=False)
    if model.aliases:
        st.markdown("  ".join(f"{badges([a])} version {v}" for a, v in sorted(model.aliases.items())))
    else:
        st.caption("No alias yet: set the champion on the version to use for scoring.")
    st.dataframe(versions_table(model), hide_index=True)
    if model.aliases.get("champion") and model.aliases.get("challenger"):
        champion_vs_challenger(model)
    aliases, compare, cutoff, edit, history = st.tabs(["Champion and challenger", "Compare versions", "Cut-off, gain and lift",
                                                       "Describe or delete", "Alias history and cut-offs"])
    with aliases:
        aliases_tab(model)
    with compare:
        compare_tab(model)
    with cutoff:
        cutoff_tab(model)
    with edit:
        edit_tab(model)
    with history:
        history_tab(model)
    if model.aliases.get("champion"):
        ui.next_link(st, "app_pages/score.py", "score a production file with the champion", {"model": name})


render()
