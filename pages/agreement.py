"""Agreement: Cohen's kappa between reviewers per category and overall; disagreements listed and resolved."""

import streamlit as st

from db.errors import ReviewConflict
from r2ta import agreement
from r2ta.eerd import CATEGORIES
from r2ta.review import DecisionRefused
from r2ta.ui import engine, require_app
from r2ta.ui_review import code_md, require_reviewer

require_app()

st.title("Reviewer agreement")
st.caption(
    "Each reviewer's latest decision (accept / edit / reject) on items reviewed by two or more people; "
    "Cohen's kappa over every pair of reviewers of an item. Resolutions are not counted as ratings."
)
items = agreement.list_rated_items(engine())
if not items:
    st.info(
        "No item has been reviewed by two people yet. To double-review, a second reviewer opens the Review page "
        "with Status set to 'any' (items they have not reviewed yet are shown)."
    )
    st.stop()

table = agreement.kappa_table(items, CATEGORIES)
overall = table[0]
fmt = lambda x: "–" if x is None else f"{x:.2f}"  # noqa: E731
open_items = agreement.list_disagreements(items)
cols = st.columns(4)
cols[0].metric("Items with 2+ reviewers", overall.items)
cols[1].metric("Cohen's kappa (overall)", fmt(overall.kappa), help="1 = perfect agreement, 0 = chance level")
cols[2].metric("Observed agreement", fmt(overall.observed))
cols[3].metric("Open disagreements", len(open_items))

left, right = st.columns([3, 2])
with left:
    st.subheader("Per category")
    st.dataframe([{"scope": r.scope, "items": r.items, "pairs": r.pairs, "observed": fmt(r.observed), "kappa": fmt(r.kappa)}
                  for r in table], hide_index=True, width="stretch")
with right:
    st.subheader("Per pair of reviewers")
    st.dataframe([{"reviewer A": p.reviewer_a, "reviewer B": p.reviewer_b, "items": p.items,
                   "observed": fmt(p.observed), "kappa": fmt(p.kappa)} for p in agreement.pairwise(items)],
                 hide_index=True, width="stretch")

st.subheader(f"Disagreements ({len(open_items)} open)")
show_resolved = st.toggle("Show resolved ones too", key="agree_resolved")
listed = agreement.list_disagreements(items, include_resolved=show_resolved)
if not listed:
    st.success("No open disagreements.")
    st.stop()
resolver = require_reviewer()


def _resolve(item: agreement.RatedItem, name: str) -> None:
    pick = st.session_state.get(f"adopt_{item.proposal_id}")
    try:
        agreement.resolve(engine(), proposal_id=item.proposal_id, expected_version=item.version, resolver=name,
                          adopt_review_id=pick, note=st.session_state.get(f"resolve_note_{item.proposal_id}", ""))
        st.session_state["agree_flash"] = ("success", f"Proposal #{item.proposal_id} resolved.")
    except ReviewConflict as err:
        st.session_state["agree_flash"] = ("error", f"Not saved: someone else saved proposal #{item.proposal_id} first. {err}")
    except DecisionRefused as err:
        st.session_state["agree_flash"] = ("error", f"Not saved: {err}")


if "agree_flash" in st.session_state:
    kind, text = st.session_state.pop("agree_flash")
    (st.success if kind == "success" else st.error)("Saved." if kind == "success" else "Not saved.")
    st.text(text)

for item in listed[:30]:
    with st.container(border=True):
        st.markdown(f"**Proposal #{item.proposal_id}** · variant {code_md(item.variant_id)} · " + ", ".join(item.categories))
        st.page_link("pages/review.py", label="Open in Review", icon=":material/rate_review:",
                     query_params={"proposal": str(item.proposal_id)})
        st.dataframe([{"review": f"#{r.review_id}", "reviewer": r.reviewer, "decision": r.decision, "reason": r.reason}
                      for r in item.ratings], hide_index=True, width="stretch")
        if item.resolution:
            st.caption("Resolved:")
            st.text(f"{item.resolution.reviewer}: {item.resolution.reason}")
        elif resolver:
            options = {r.review_id: f"#{r.review_id} by {r.reviewer}: {r.decision}" for r in item.ratings}
            a, b, c = st.columns([2, 3, 1], vertical_alignment="bottom")
            a.selectbox("Adopt", list(options), format_func=options.get, key=f"adopt_{item.proposal_id}")
            b.text_input("Note", key=f"resolve_note_{item.proposal_id}", max_chars=300)
            c.button("Resolve", key=f"resolve_{item.proposal_id}", on_click=_resolve, args=(item, resolver))
if len(listed) > 30:
    st.caption(f"… and {len(listed) - 30} more.")
