//! The state graph as Mermaid and DOT text, rendered once at compile time.

use crate::ast::Machine;
use std::fmt::Write;

/// Mermaid `stateDiagram-v2`: `[*]` enters every initial state and leaves every terminal one.
pub(crate) fn mermaid(machine: &Machine<'_>, edges: &[(usize, usize)]) -> String {
    let mut out = String::from("stateDiagram-v2\n");
    for state in machine.states.iter().filter(|s| s.initial) {
        let _ = writeln!(out, "    [*] --> {}", state.ident);
    }
    for &(from, to) in edges {
        let _ = writeln!(out, "    {} --> {}", machine.states[from].ident, machine.states[to].ident);
    }
    for (index, state) in machine.states.iter().enumerate() {
        if is_terminal(index, edges) {
            let _ = writeln!(out, "    {} --> [*]", state.ident);
        }
    }
    out
}

/// Graphviz `digraph`: a point enters initial states, terminal states have a double border.
pub(crate) fn dot(machine: &Machine<'_>, edges: &[(usize, usize)]) -> String {
    let mut out = format!("digraph {} {{\n    rankdir=LR;\n    node [shape=box, style=rounded];\n", machine.ident);
    out.push_str("    __start [shape=point, label=\"\"];\n");
    for (index, state) in machine.states.iter().enumerate() {
        if is_terminal(index, edges) {
            let _ = writeln!(out, "    {} [peripheries=2];", state.ident);
        }
    }
    for state in machine.states.iter().filter(|s| s.initial) {
        let _ = writeln!(out, "    __start -> {};", state.ident);
    }
    for &(from, to) in edges {
        let _ = writeln!(out, "    {} -> {};", machine.states[from].ident, machine.states[to].ident);
    }
    out.push_str("}\n");
    out
}

fn is_terminal(index: usize, edges: &[(usize, usize)]) -> bool {
    !edges.iter().any(|&(from, _)| from == index)
}
