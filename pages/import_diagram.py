"""Bring your own diagram: upload ERDPlus / PlantUML Chen / Mermaid / R2tA JSON, see it, check it, ask the model."""

import streamlit as st

from r2ta.catalog import mistake_highlights
from r2ta.errors import R2taError
from r2ta.ui import category_label, embedded_backend, require_app, show_diagram
from r2ta.upload import (
    SAMPLES_DIR,
    import_upload,
    list_samples,
    plantuml_text,
)

require_app()

st.title("Import a diagram")
st.caption("ERDPlus (.erdplus, both formats), PlantUML Chen (@startchen), Mermaid erDiagram, or R2tA JSON.")

source = st.radio("Source", ["Upload a file", "Paste text", "Try a sample"], horizontal=True)
fmt = st.selectbox("Format", ["detect", "erdplus", "plantuml", "mermaid", "json"])
data: bytes | None = None
name = ""
if source == "Upload a file":
    up = st.file_uploader("Diagram file", type=["erdplus", "json", "puml", "plantuml", "txt", "mmd", "md"])
    if up is not None:
        data, name = up.getvalue(), up.name
elif source == "Paste text":
    text = st.text_area("Diagram text", height=200)
    if text.strip():
        data, name = text.encode("utf-8"), "pasted text"
else:
    sample = st.selectbox("Sample", list_samples())
    if sample:
        data, name = (SAMPLES_DIR / sample).read_bytes(), sample

if data is None:
    st.info("Choose a file, paste a diagram or pick a sample.")
    st.stop()

try:
    result = import_upload(data, None if fmt == "detect" else fmt, name)
except R2taError as err:
    st.error(f"Could not import {name}:\n\n{err}")
    st.stop()

st.success(f"Imported {name} as {result.format}: {len(result.diagram.entities)} entities, "
           f"{len(result.diagram.relationships)} relationships.")
for w in result.warnings:
    st.warning(w)

findings = result.checker_findings
left, right = st.columns([2, 1])
with left:
    show_diagram(result.diagram, highlight=mistake_highlights(result.diagram, findings), legend=st.toggle("Legend"))
with right:
    st.subheader(f"Checker findings ({len(findings)})")
    if not findings:
        st.info("No structural mistakes. Requirement-level mistakes need the requirements: ask the model below.")
    for f in findings:
        with st.container(border=True):
            st.markdown(f"**{category_label(f.category)}**")
            st.text(f.explanation)
    st.download_button("Download as R2tA JSON", result.json_text, file_name=f"{result.diagram.id}.json")
    st.download_button("Download as PlantUML Chen", plantuml_text(result.diagram), file_name=f"{result.diagram.id}.puml")

st.subheader("Ask the model")
requirements = st.text_area("Requirements this diagram should satisfy", height=150)
if st.button("Ask the current model for its reasoning", icon=":material/psychology:"):
    from r2ta.diagnose import diagnose

    try:
        with st.spinner("The model is reasoning…"):
            d = diagnose(result.diagram, requirements, embedded_backend())
    except R2taError as err:
        st.error(str(err))
        st.stop()
    st.caption(f"{d.completion_tokens or '?'} tokens in {d.latency_s:.1f} s"
               + (" · the model wrote no verdict in its budget, so R2tA appended the VERDICT line and "
                  "the model wrote the verdict from there" if d.verdict_forced_at is not None else ""))
    st.markdown("**Verdict** (parsed)" + ("" if d.parsed.valid else " — the output did not parse fully"))
    for m in d.parsed.verdict:
        mark = "confirmed by the checker" if m in d.confirmed else "not confirmed by the checker"
        st.text(f"{m.category} · {', '.join(m.elements)} · {m.explanation}  [{mark}]")
    for e in d.parsed.errors:
        st.warning(e)
    with st.expander("Raw model output"):
        st.text(d.raw_output)
