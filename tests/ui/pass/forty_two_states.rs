use statefold::Machine;

/// A long pipeline of 42 states.
#[derive(Machine, Clone, Debug, PartialEq)]
enum Pipeline {
    #[initial]
    S00 { step_00: i32 },
    #[from(S00)]
    S01,
    #[from(S00, S01)]
    S02,
    #[from(S01, S02)]
    S03 { step_03: i32 },
    #[from(S02, S03)]
    S04,
    #[from(S03, S04)]
    S05,
    #[from(S04, S05)]
    S06 { step_06: i32 },
    #[from(S05, S06)]
    S07,
    #[from(S06, S07)]
    S08,
    #[from(S07, S08)]
    S09 { step_09: i32 },
    #[from(S08, S09)]
    S10,
    #[from(S09, S10)]
    S11,
    #[from(S10, S11)]
    S12 { step_12: i32 },
    #[from(S11, S12)]
    S13,
    #[from(S12, S13)]
    S14,
    #[from(S13, S14)]
    S15 { step_15: i32 },
    #[from(S14, S15)]
    S16,
    #[from(S15, S16)]
    S17,
    #[from(S16, S17)]
    S18 { step_18: i32 },
    #[from(S17, S18)]
    S19,
    #[from(S18, S19)]
    S20,
    #[from(S19, S20)]
    S21 { step_21: i32 },
    #[from(S20, S21)]
    S22,
    #[from(S21, S22)]
    S23,
    #[from(S22, S23)]
    S24 { step_24: i32 },
    #[from(S23, S24)]
    S25,
    #[from(S24, S25)]
    S26,
    #[from(S25, S26)]
    S27 { step_27: i32 },
    #[from(S26, S27)]
    S28,
    #[from(S27, S28)]
    S29,
    #[from(S28, S29)]
    S30 { step_30: i32 },
    #[from(S29, S30)]
    S31,
    #[from(S30, S31)]
    S32,
    #[from(S31, S32)]
    S33 { step_33: i32 },
    #[from(S32, S33)]
    S34,
    #[from(S33, S34)]
    S35,
    #[from(S34, S35)]
    S36 { step_36: i32 },
    #[from(S35, S36)]
    S37,
    #[from(S36, S37)]
    S38,
    #[from(S37, S38)]
    S39 { step_39: i32 },
    #[from(S38, S39)]
    S40,
    #[from(S39, S40)]
    S41,
}

fn main() {
    assert_eq!(Pipeline::DEF.states.len(), 42);
    assert_eq!(PipelineStatus::ALL.len(), 42);
    assert_eq!(Pipeline::DEF.columns.len(), 14);
    assert!(Pipeline::DEF.can_transition("S39", "S41"));
}
