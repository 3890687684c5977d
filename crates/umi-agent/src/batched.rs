//! Several agent runs or decisions at once on one [`LlamaGenerator`], their generations
//! decoded together (continuous batching, `umi_model::RaggedBatch`).
//!
//! Each run is an ordinary future over a [`BatchHandle`], a [`Generator`] that queues its
//! request and waits; [`Batcher::run`] polls the runs and, while they wait, advances the
//! model: queued requests join their role's batch (prefilled one by one, in the order they
//! came, through the role's prefix cache) and the batch decodes one token for all of its
//! sequences, whose weights are read once per step instead of once per sequence. A run that
//! finishes makes room for the next one. The agent's own code (`decide`, [`crate::Agent`])
//! is unchanged: it cannot tell a handle from a generator of its own.
//!
//! One role's batch steps at a time (a role's adapters are installed while it steps): the
//! role with the most requests, running and queued, goes next, so that the planners of many
//! decisions decode together, then their callers.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use umi_data::{Role, RoleMap};
use umi_model::RaggedBatch;

use crate::generator::{Generator, GeneratorError, PromptLength};
use crate::model::LlamaGenerator;

/// A request a run made and the batcher has not yet taken.
struct Request {
    id: usize,
    role: Role,
    prompt: String,
    stop: Vec<String>,
}

/// The shared state: the generator, the queue, each role's running batch, the answers.
struct State {
    generator: LlamaGenerator,
    max_batch: usize,
    queue: VecDeque<Request>,
    batches: RoleMap<RaggedBatch<usize>>,
    answers: HashMap<usize, Result<String, GeneratorError>>,
    next_id: usize,
}

/// Runs agent futures concurrently on one generator, batching their generations.
pub struct Batcher {
    state: Rc<RefCell<Option<State>>>,
}

/// One run's [`Generator`]: queues the request with its [`Batcher`] and waits for the answer.
/// Only [`Batcher::run`] drives it; awaited anywhere else it never finishes.
#[derive(Clone)]
pub struct BatchHandle {
    state: Rc<RefCell<Option<State>>>,
}

impl Batcher {
    /// A batcher decoding at most `max_batch` sequences per step (1: one at a time, what
    /// `generator` alone does).
    pub fn new(generator: LlamaGenerator, max_batch: usize) -> Self {
        Self {
            state: Rc::new(RefCell::new(Some(State {
                generator,
                max_batch: max_batch.max(1),
                queue: VecDeque::new(),
                batches: RoleMap::default(),
                answers: HashMap::new(),
                next_id: 0,
            }))),
        }
    }

    /// A generator for one run.
    pub fn handle(&self) -> BatchHandle {
        BatchHandle {
            state: self.state.clone(),
        }
    }

    /// The generator, e.g. for its usage counters.
    ///
    /// # Panics
    ///
    /// If called from inside a run's future.
    pub fn with_generator<T>(&self, f: impl FnOnce(&mut LlamaGenerator) -> T) -> T {
        let mut state = self.state.borrow_mut();
        f(&mut state.as_mut().expect("not inside a step").generator)
    }

    /// Runs `runs` (futures whose generations go through this batcher's handles), at most
    /// `concurrency` at a time, taking the next as one finishes, and gives each output to
    /// `on_output` with the run's index, in the order they finish. `on_output` returning
    /// [`ControlFlow::Break`] ends the run there (the runs still going are dropped).
    ///
    /// # Errors
    ///
    /// [`GeneratorError`] when the model fails in a step (a device or tokenizer failure; a
    /// request that cannot join, such as an overlong prompt, is answered with its error
    /// instead), or when the runs wait on something other than this batcher.
    pub async fn run<F: Future>(
        &self,
        runs: impl IntoIterator<Item = F>,
        concurrency: usize,
        mut on_output: impl FnMut(usize, F::Output) -> ControlFlow<()>,
    ) -> Result<(), GeneratorError> {
        let mut runs = runs.into_iter().enumerate();
        let mut active: Vec<(usize, Pin<Box<F>>)> = Vec::new();
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            while active.len() < concurrency.max(1) {
                match runs.next() {
                    Some((index, run)) => active.push((index, Box::pin(run))),
                    None => break,
                }
            }
            if active.is_empty() {
                return Ok(());
            }
            // poll every run: each either finishes or queues a request (or already waits)
            let mut i = 0;
            while i < active.len() {
                if let Poll::Ready(output) = active[i].1.as_mut().poll(&mut cx) {
                    let (index, _) = active.swap_remove(i);
                    if on_output(index, output).is_break() {
                        return Ok(());
                    }
                } else {
                    i += 1;
                }
            }
            if active.is_empty() {
                continue;
            }
            // The state leaves the cell while the model works, so no borrow is held across
            // the await (the runs are not polled meanwhile).
            let mut state = self
                .state
                .borrow_mut()
                .take()
                .expect("the batcher's state is in place between steps");
            let stepped = state.step().await;
            *self.state.borrow_mut() = Some(state);
            if !stepped? {
                return Err(GeneratorError {
                    role: Role::Planner,
                    message: "the runs wait on something other than the batcher's model".into(),
                });
            }
        }
    }
}

impl State {
    /// Lets the queued requests of the busiest role join its batch and decodes one token for
    /// it; `false` when there was nothing to do.
    async fn step(&mut self) -> Result<bool, GeneratorError> {
        let roles = [Role::Planner, Role::Caller, Role::Summarizer];
        let load = |role: Role| {
            self.batches.get(role).len()
                + self.queue.iter().filter(|r| slot(r.role) == role).count()
        };
        // the busiest role; on a tie the first of planner, caller, summarizer
        let Some((_, role)) = roles
            .into_iter()
            .enumerate()
            .filter(|&(_, r)| load(r) > 0)
            .max_by_key(|&(i, r)| (load(r), std::cmp::Reverse(i)))
        else {
            return Ok(false);
        };
        let mut i = 0;
        while i < self.queue.len() && self.batches.get(role).len() < self.max_batch {
            if slot(self.queue[i].role) != role {
                i += 1;
                continue;
            }
            let request = self.queue.remove(i).expect("an index in range");
            let batch = self.batches.get_mut(role);
            if let Err(e) = self
                .generator
                .join_batch(
                    batch,
                    request.id,
                    request.role,
                    &request.prompt,
                    &request.stop,
                )
                .await
            {
                self.answers.insert(request.id, Err(e));
            }
        }
        let batch = self.batches.get_mut(role);
        if !batch.is_empty() {
            for (id, text) in self.generator.step_batch(batch, role).await? {
                self.answers.insert(id, Ok(text));
            }
        }
        Ok(true)
    }
}

/// The batch a role's requests go to: the backbone shares the planner's (as its model and
/// prefix cache do).
fn slot(role: Role) -> Role {
    match role {
        Role::Backbone => Role::Planner,
        other => other,
    }
}

impl Generator for BatchHandle {
    async fn generate(
        &mut self,
        role: Role,
        prompt: &str,
        stop: &[String],
    ) -> Result<String, GeneratorError> {
        let id = {
            let mut state = self.state.borrow_mut();
            let state = state.as_mut().expect("runs are polled between steps");
            let id = state.next_id;
            state.next_id += 1;
            state.queue.push_back(Request {
                id,
                role,
                prompt: prompt.to_string(),
                stop: stop.to_vec(),
            });
            id
        };
        std::future::poll_fn(|_| {
            let mut state = self.state.borrow_mut();
            let state = state.as_mut().expect("runs are polled between steps");
            match state.answers.remove(&id) {
                Some(answer) => Poll::Ready(answer),
                None => Poll::Pending,
            }
        })
        .await
    }

    fn prompt_length(
        &mut self,
        role: Role,
        prompt: &str,
    ) -> Result<Option<PromptLength>, GeneratorError> {
        let mut state = self.state.borrow_mut();
        let state = state.as_mut().expect("runs are polled between steps");
        state.generator.prompt_length(role, prompt)
    }
}
