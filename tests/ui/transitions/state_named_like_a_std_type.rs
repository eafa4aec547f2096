use statefold::Machine;

/// `Pending` and `Ready` are also names in `std`: the message still reads in states.
#[derive(Machine, Clone, Debug, PartialEq)]
enum Job {
    #[initial]
    Pending,
    #[from(Pending)]
    Ready,
    #[from(Ready)]
    Running,
}

fn run(job: statefold::Record<Job, JobPending>) {
    let _ = job.transition(JobRunning);
}

fn main() {}
