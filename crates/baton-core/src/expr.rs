//! Policy conditions in CEL, behind one module.
//!
//! The `cel` crate parses and evaluates; it does not type-check. An admin's typo must not wait
//! for the one conversation that reaches it, so every expression is checked when the policy
//! loads against the documented context ([`Schema`]): unknown identifiers, unknown fields,
//! unknown functions, calendars that do not exist, operands of the wrong type, and a condition
//! that is not a boolean are all rejected with the line and column inside the expression.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use cel::common::ast::{Expr as Node, LiteralValue};
use cel::{Env, IdedExpr, Program};

mod fast;
pub use fast::{Plain, Strs};

/// The static type of a value in the evaluation context.
#[derive(Debug, Clone, PartialEq)]
pub enum Type {
    Bool,
    Int,
    Double,
    String,
    Null,
    List(Box<Type>),
    /// A map with string keys whose values have this type.
    Map(Box<Type>),
    /// A documented object: only its fields can be selected.
    Object(Arc<Object>),
    /// Not known until evaluation (a map value, a comprehension accumulator).
    Dyn,
}

impl Type {
    fn is_numeric(&self) -> bool {
        matches!(self, Type::Int | Type::Double | Type::Dyn)
    }

    fn accepts_bool(&self) -> bool {
        matches!(self, Type::Bool | Type::Dyn)
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Type::Bool => f.write_str("bool"),
            Type::Int => f.write_str("int"),
            Type::Double => f.write_str("double"),
            Type::String => f.write_str("string"),
            Type::Null => f.write_str("null"),
            Type::List(t) => write!(f, "list<{t}>"),
            Type::Map(t) => write!(f, "map<string, {t}>"),
            Type::Object(o) => f.write_str(&o.name),
            Type::Dyn => f.write_str("dyn"),
        }
    }
}

/// A documented object of the context: named fields with types and a line of documentation.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    pub name: String,
    pub fields: BTreeMap<String, (Type, &'static str)>,
}

impl Object {
    pub fn new(name: &str) -> Object {
        Object {
            name: name.to_string(),
            fields: BTreeMap::new(),
        }
    }

    /// Adds a field (builder style).
    pub fn field(mut self, name: &str, ty: Type, doc: &'static str) -> Object {
        self.fields.insert(name.to_string(), (ty, doc));
        self
    }

    pub fn into_type(self) -> Type {
        Type::Object(Arc::new(self))
    }
}

/// What expressions may refer to: the context's top-level names and the calendars that
/// `hours.open(name)` accepts.
#[derive(Debug, Clone)]
pub struct Schema {
    pub root: Object,
    pub calendars: Vec<String>,
    /// Lists of strings whose values are known (`topics`, `intents`): a literal tested with
    /// `in` against a field of that name must be one of them, so that a misspelt or
    /// imagined value is an error at load rather than a condition that never holds.
    pub vocab: Vec<(&'static str, &'static [&'static str])>,
}

/// Where in an expression something is wrong, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    /// 1-based line within the expression source.
    pub line: u32,
    /// 1-based column (in characters) within that line.
    pub column: u32,
    pub message: String,
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

impl std::error::Error for ExprError {}

/// A checked expression, ready to evaluate.
#[derive(Debug)]
pub struct Expr {
    source: String,
    program: Program,
    ty: Type,
    /// The same expression for the quicker evaluator, when it lies within its subset.
    fast: Option<fast::Fast>,
}

impl Expr {
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The static type the checker inferred.
    pub fn ty(&self) -> &Type {
        &self.ty
    }

    pub fn program(&self) -> &Program {
        &self.program
    }

    /// Whether the quicker evaluator (`expr::fast`) answers this expression when it can,
    /// rather than CEL alone.
    pub fn is_quick(&self) -> bool {
        self.fast.is_some()
    }
}

/// A value bound in a [`Scope`], built directly in the interpreter's representation.
pub type Val = Box<dyn cel::common::value::Val + 'static>;

/// Builders for [`Val`]s: the context is rebuilt for every decision, so it is built without an
/// intermediate tree.
pub mod val {
    use std::collections::HashMap;

    use cel::common::types::{CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelString};

    use super::Val;

    pub fn bool(b: bool) -> Val {
        Box::new(CelBool::from(b))
    }

    pub fn int(i: i64) -> Val {
        Box::new(CelInt::from(i))
    }

    pub fn double(d: f64) -> Val {
        Box::new(CelDouble::from(d))
    }

    pub fn string(s: &str) -> Val {
        Box::new(CelString::from(s.to_string()))
    }

    pub fn strings<S: AsRef<str>>(items: &[S]) -> Val {
        Box::new(CelList::from(
            items
                .iter()
                .map(|s| string(s.as_ref()))
                .collect::<Vec<Val>>(),
        ))
    }

    /// A map with string keys.
    pub fn object(fields: Vec<(&str, Val)>) -> Val {
        let m: HashMap<CelMapKey<'static>, Val> = fields
            .into_iter()
            .map(|(k, v)| (CelMapKey::from(k.to_string()), v))
            .collect();
        Box::new(CelMap::from(m))
    }

    /// A map with string keys and string values.
    pub fn string_map<'a>(entries: impl IntoIterator<Item = (&'a String, &'a String)>) -> Val {
        let m: HashMap<CelMapKey<'static>, Val> = entries
            .into_iter()
            .map(|(k, v)| (CelMapKey::from(k.clone()), string(v)))
            .collect();
        Box::new(CelMap::from(m))
    }
}

/// An object built once and bound many times, with one integer field that changes between
/// bindings (a rep's `load`): binding it costs a reference count, not a rebuilt map. Reads of
/// the other fields borrow from the shared map.
#[derive(Debug, Clone)]
pub struct Layered {
    base: Arc<cel::common::types::CelMap<'static>>,
    key: &'static str,
    value: cel::common::types::CelInt,
}

/// The shared part of a [`Layered`] object.
pub type Shared = Arc<cel::common::types::CelMap<'static>>;

/// Builds the shared part of a [`Layered`] object from its fields.
pub fn shared(fields: Vec<(&str, Val)>) -> Shared {
    use cel::common::types::{CelMap, CelMapKey};
    let m: std::collections::HashMap<CelMapKey<'static>, Val> = fields
        .into_iter()
        .map(|(k, v)| (CelMapKey::from(k.to_string()), v))
        .collect();
    Arc::new(CelMap::from(m))
}

impl Layered {
    /// `base` with `key` read as `value`.
    pub fn bind(base: &Shared, key: &'static str, value: i64) -> Val {
        Box::new(Layered {
            base: Arc::clone(base),
            key,
            value: value.into(),
        })
    }
}

impl cel::common::value::Val for Layered {
    fn get_type(&self) -> &cel::common::types::Type {
        &cel::common::types::MAP_TYPE
    }

    fn cel_type() -> &'static cel::common::types::Type {
        &cel::common::types::MAP_TYPE
    }

    fn as_indexer<'b, 'w>(&'b self) -> Option<&'b (dyn cel::common::traits::Indexer + 'w)>
    where
        Self: 'w,
    {
        Some(self)
    }

    fn clone_as_boxed<'w>(&self) -> Box<dyn cel::common::value::Val + 'w>
    where
        Self: 'w,
    {
        Box::new(self.clone())
    }
}

impl cel::common::traits::Indexer for Layered {
    fn get<'b, 'w>(
        &'b self,
        key: &dyn cel::common::value::Val,
    ) -> Result<cel::common::value::CowVal<'b, 'w>, cel::ExecutionError>
    where
        Self: 'w,
    {
        if key
            .downcast_ref::<cel::common::types::CelString>()
            .is_some_and(|k| k.inner() == self.key)
        {
            return Ok(cel::common::value::CowVal::Borrowed(&self.value));
        }
        self.base.get(key)
    }

    fn steal<'w>(
        self: Box<Self>,
        key: &dyn cel::common::value::Val,
    ) -> Result<Box<dyn cel::common::value::Val + 'w>, cel::ExecutionError>
    where
        Self: 'w,
    {
        self.get(key).map(|v| v.into_owned())
    }
}

/// An expression failed at evaluation time (a missing optional value, a division by zero).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalError(pub String);

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EvalError {}

/// A value of the context as an expression reads it from [`Facts`]: borrowed when the facts
/// keep it (a list read by several conditions), owned when built for the read.
pub type Fact<'a> = cel::common::value::CowVal<'a, 'a>;

/// The context's values, read on demand: an expression that reads `signals.human_request` asks
/// for that path and nothing else is built. Binding every name to a map built before each
/// decision cost more than evaluating the conditions (the decide issue's profile).
pub trait Facts: Send + Sync {
    /// The value at a dotted path (`signals.intents`, `lead.criteria.budget_ok`), or `None`
    /// for a path these facts do not answer. An object of the schema (`signals`, `lead.budget`)
    /// that is not answered here is built by [`Lookup`] from its fields.
    fn get(&self, path: &str) -> Option<Fact<'_>>;

    /// The value at the dotted path of a scalar or a list of strings, without building a CEL
    /// value, for the quicker evaluator; `None` (the default) leaves the condition to CEL.
    /// Where both answer, they must agree.
    fn plain(&self, _path: &str) -> Option<Plain<'_>> {
        None
    }
}

/// [`Facts`] with the schema that says which paths are objects, ready to bind in a scope
/// ([`Compiler::scope_over`]).
pub struct Lookup<'a, F> {
    pub facts: F,
    root: &'a Object,
}

impl<'a, F: Facts> Lookup<'a, F> {
    pub fn new(compiler: &'a Compiler, facts: F) -> Lookup<'a, F> {
        Lookup {
            facts,
            root: &compiler.schema.root,
        }
    }

    /// The schema's object at `path`, if that path names one.
    fn object(&self, path: &str) -> Option<&'a Object> {
        let mut obj = self.root;
        for segment in path.split('.') {
            match obj.fields.get(segment) {
                Some((Type::Object(o), _)) => obj = o,
                _ => return None,
            }
        }
        Some(obj)
    }

    /// An object read as a whole (`has(signals.loop)`, `signals` as a value): a map of the
    /// fields the facts answer.
    fn build(&self, path: &str, obj: &Object) -> Box<dyn cel::common::value::Val + '_> {
        use cel::common::types::{CelMap, CelMapKey};
        let mut m =
            std::collections::HashMap::<CelMapKey<'_>, Box<dyn cel::common::value::Val + '_>>::new(
            );
        for (name, (ty, _)) in &obj.fields {
            let sub = format!("{path}.{name}");
            let value = match self.facts.get(&sub) {
                Some(v) => Some(v.into_owned()),
                None => match ty {
                    Type::Object(o) => Some(self.build(&sub, o)),
                    _ => None,
                },
            };
            if let Some(v) = value {
                m.insert(CelMapKey::from(name.clone()), v);
            }
        }
        Box::new(CelMap::from(m))
    }
}

impl<F: Facts> cel::context::VariableResolver for Lookup<'_, F> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<cel::common::value::CowVal<'b, 'b>> {
        if let Some(v) = self.facts.get(variable) {
            return Some(v);
        }
        let obj = self.object(variable)?;
        Some(cel::common::value::CowVal::Owned(self.build(variable, obj)))
    }
}

/// The values of one evaluation: the context's names, and the calendars `hours.open` reads at
/// the instant `now`. Build one per decision and evaluate every expression in it.
pub struct Scope<'v> {
    ctx: cel::Context<'v, 'v>,
    /// The facts, calendars and instant for the quicker evaluator (scopes over [`Facts`]).
    fast: Option<fast::Env<'v>>,
}

impl Scope<'_> {
    /// Binds (or rebinds) a top-level name, for stages that read the one before.
    pub fn set(&mut self, name: &str, value: Val) {
        self.ctx.add_variable_as_val(name, value);
        // The facts no longer say everything the scope binds.
        self.fast = None;
    }

    /// Evaluates a checked expression.
    pub fn eval(&self, e: &Expr) -> Result<cel::Value, EvalError> {
        e.program
            .execute(&self.ctx)
            .map_err(|err| EvalError(format!("{}: {err}", e.source)))
    }

    /// Evaluates a condition; a non-bool result (possible only through `dyn` values) is an error.
    pub fn eval_bool(&self, e: &Expr) -> Result<bool, EvalError> {
        if let (Some(f), Some(env)) = (&e.fast, &self.fast)
            && let Some(b) = f.eval_bool(env)
        {
            return Ok(b);
        }
        self.eval_bool_cel(e)
    }

    /// [`Scope::eval_bool`] by CEL alone.
    pub fn eval_bool_cel(&self, e: &Expr) -> Result<bool, EvalError> {
        match self.eval(e)? {
            cel::Value::Bool(b) => Ok(b),
            other => Err(EvalError(format!(
                "{}: expected a bool, got {other:?}",
                e.source
            ))),
        }
    }
}

/// The CEL environment, built once, and the schema expressions are checked against.
#[derive(Clone)]
pub struct Compiler {
    env: Arc<Env>,
    schema: Schema,
}

impl fmt::Debug for Compiler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compiler")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl Compiler {
    pub fn new(schema: Schema) -> Compiler {
        Compiler {
            env: Arc::new(Env::stdlib()),
            schema,
        }
    }

    pub fn env(&self) -> &Arc<Env> {
        &self.env
    }

    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// A scope binding each top-level name of the context to a value, with `hours.open(name)`
    /// answering for `now` from `calendars`.
    pub fn scope(
        &self,
        values: impl IntoIterator<Item = (String, Val)>,
        calendars: Arc<BTreeMap<String, crate::hours::Calendar>>,
        now: jiff::Timestamp,
    ) -> Result<Scope<'static>, EvalError> {
        let mut ctx = self.context(calendars, now)?;
        ctx.add_variable_from_value(
            "hours",
            cel::Value::Map(std::collections::HashMap::<String, cel::Value>::new().into()),
        );
        for (k, v) in values {
            ctx.add_variable_as_val(k, v);
        }
        Ok(Scope { ctx, fast: None })
    }

    /// A scope that reads the context's values from `facts` when an expression reads them,
    /// with `hours.open(name)` answering for `now` from `calendars`.
    pub fn scope_over<'v, F: Facts>(
        &self,
        facts: &'v Lookup<'_, F>,
        calendars: Arc<BTreeMap<String, crate::hours::Calendar>>,
        now: jiff::Timestamp,
    ) -> Result<Scope<'v>, EvalError> {
        let mut ctx = self.context(calendars.clone(), now)?;
        ctx.set_variable_resolver(facts);
        Ok(Scope {
            ctx,
            fast: Some(fast::Env {
                facts: &facts.facts,
                calendars,
                now,
            }),
        })
    }

    fn context<'v>(
        &self,
        calendars: Arc<BTreeMap<String, crate::hours::Calendar>>,
        now: jiff::Timestamp,
    ) -> Result<cel::Context<'v, 'v>, EvalError> {
        let mut ctx = cel::Context::with_env(self.env.clone());
        ctx.add_function("hours.open", move |name: Arc<String>| {
            calendars.get(name.as_str()).is_some_and(|c| c.is_open(now))
        })
        .map_err(|e| EvalError(format!("hours.open: {e}")))?;
        Ok(ctx)
    }

    /// Parses and checks `source`; with `want`, the result must have that type (or be `dyn`).
    pub fn compile(&self, source: &str, want: Option<&Type>) -> Result<Expr, ExprError> {
        let program = self
            .env
            .compile(source)
            .map_err(|e| parse_error(source, &e.to_string()))?;
        let mut checker = Checker {
            compiler: self,
            program: &program,
            source,
            scopes: Vec::new(),
        };
        let ty = checker.check(program.expression())?;
        if let Some(w) = want
            && !(ty == *w || ty == Type::Dyn || (*w == Type::Double && ty == Type::Int))
        {
            return Err(ExprError {
                line: 1,
                column: 1,
                message: format!("this expression is a {ty}; a {w} is needed here"),
            });
        }
        let fast = fast::Fast::compile(&self.schema, program.expression());
        Ok(Expr {
            source: source.to_string(),
            program,
            ty,
            fast,
        })
    }
}

/// The cel crate reports `<input>:LINE:COL: message` followed by a caret diagram.
fn parse_error(source: &str, text: &str) -> ExprError {
    let first = text.lines().next().unwrap_or(text);
    let rest = first.split("<input>:").nth(1).unwrap_or(first);
    let mut parts = rest.splitn(3, ':');
    let line = parts.next().and_then(|l| l.trim().parse().ok());
    let column = parts.next().and_then(|c| c.trim().parse::<u32>().ok());
    let message = parts
        .next()
        .map_or_else(|| first.to_string(), |m| m.trim().to_string());
    match (line, column) {
        (Some(line), Some(column)) => ExprError {
            line,
            column: column + 1,
            message,
        },
        _ => ExprError {
            line: 1,
            column: 1,
            message: if source.trim().is_empty() {
                "the expression is empty".into()
            } else {
                message
            },
        },
    }
}

struct Checker<'a> {
    compiler: &'a Compiler,
    program: &'a Program,
    source: &'a str,
    /// Comprehension variables in scope, innermost last.
    scopes: Vec<(String, Type)>,
}

impl Checker<'_> {
    fn err(&self, node: &IdedExpr, message: String) -> ExprError {
        let start = self
            .program
            .source_info()
            .offset_for(node.id)
            .map_or(0, |(s, _)| s as usize);
        let (line, column) = line_column(self.source, start);
        ExprError {
            line,
            column,
            message,
        }
    }

    fn check(&mut self, node: &IdedExpr) -> Result<Type, ExprError> {
        match &node.expr {
            Node::Literal(l) => Ok(match l {
                LiteralValue::Boolean(_) => Type::Bool,
                LiteralValue::Int(_) | LiteralValue::UInt(_) => Type::Int,
                LiteralValue::Double(_) => Type::Double,
                LiteralValue::String(_) => Type::String,
                LiteralValue::Null => Type::Null,
                LiteralValue::Bytes(_) => Type::Dyn,
            }),
            Node::Ident(name) => self.ident(node, name),
            Node::Select(sel) => {
                let operand = self.check(&sel.operand)?;
                let ty = self.select(node, &operand, &sel.field)?;
                Ok(if sel.test { Type::Bool } else { ty })
            }
            Node::List(list) => {
                let mut elem: Option<Type> = None;
                for e in &list.elements {
                    let t = self.check(e)?;
                    elem = Some(match elem {
                        Some(prev) if prev == t => prev,
                        Some(_) => Type::Dyn,
                        None => t,
                    });
                }
                Ok(Type::List(Box::new(elem.unwrap_or(Type::Dyn))))
            }
            Node::Map(map) => {
                for entry in &map.entries {
                    if let cel::common::ast::EntryExpr::MapEntry(e) = &entry.expr {
                        self.check(&e.key)?;
                        self.check(&e.value)?;
                    }
                }
                Ok(Type::Map(Box::new(Type::Dyn)))
            }
            Node::Comprehension(c) => {
                let range = self.check(&c.iter_range)?;
                let elem = match &range {
                    Type::List(t) => (**t).clone(),
                    Type::Map(_) => Type::String,
                    Type::Dyn => Type::Dyn,
                    other => {
                        return Err(
                            self.err(&c.iter_range, format!("cannot iterate over a {other}"))
                        );
                    }
                };
                let accu = self.check(&c.accu_init)?;
                self.scopes.push((c.iter_var.clone(), elem));
                if let Some(v2) = &c.iter_var2 {
                    self.scopes.push((v2.clone(), Type::Dyn));
                }
                self.scopes.push((
                    c.accu_var.clone(),
                    if accu == Type::Bool {
                        Type::Bool
                    } else {
                        Type::Dyn
                    },
                ));
                let result = (|| {
                    self.check(&c.loop_cond)?;
                    self.check(&c.loop_step)?;
                    self.check(&c.result)
                })();
                self.scopes
                    .truncate(self.scopes.len() - if c.iter_var2.is_some() { 3 } else { 2 });
                result
            }
            Node::Call(call) => self.call(node, call),
            Node::Struct(_) | Node::Unspecified => Err(self.err(
                node,
                "message literals are not part of Baton's policy language".into(),
            )),
        }
    }

    fn ident(&self, node: &IdedExpr, name: &str) -> Result<Type, ExprError> {
        if let Some((_, t)) = self.scopes.iter().rev().find(|(n, _)| n == name) {
            return Ok(t.clone());
        }
        match self.compiler.schema.root.fields.get(name) {
            Some((t, _)) => Ok(t.clone()),
            None => {
                let known: Vec<&str> = self
                    .compiler
                    .schema
                    .root
                    .fields
                    .keys()
                    .map(String::as_str)
                    .collect();
                Err(self.err(
                    node,
                    format!(
                        "unknown name `{name}`; the context has {}",
                        known.join(", ")
                    ),
                ))
            }
        }
    }

    fn select(&self, node: &IdedExpr, operand: &Type, field: &str) -> Result<Type, ExprError> {
        match operand {
            Type::Object(o) => match o.fields.get(field) {
                Some((t, _)) => Ok(t.clone()),
                None => {
                    let known: Vec<&str> = o.fields.keys().map(String::as_str).collect();
                    Err(self.err(
                        node,
                        format!(
                            "`{}` has no field `{field}`; it has {}",
                            o.name,
                            known.join(", ")
                        ),
                    ))
                }
            },
            Type::Map(v) => Ok((**v).clone()),
            Type::Dyn => Ok(Type::Dyn),
            other => Err(self.err(node, format!("cannot read `.{field}` of a {other}"))),
        }
    }

    fn call(
        &mut self,
        node: &IdedExpr,
        call: &cel::common::ast::CallExpr,
    ) -> Result<Type, ExprError> {
        let f = call.func_name.as_str();
        // `hours.open("name")` is a namespaced function, not a field of `hours`.
        if f == "open"
            && let Some(t) = &call.target
            && matches!(&t.expr, Node::Ident(n) if n == "hours")
        {
            return self.hours_open(node, &call.args);
        }
        let target = match &call.target {
            Some(t) => Some(self.check(t)?),
            None => None,
        };
        let args = call
            .args
            .iter()
            .map(|a| self.check(a))
            .collect::<Result<Vec<_>, _>>()?;
        let mismatch = |this: &Self, what: String| Err(this.err(node, what));
        let op = |s: &str| s.trim_matches('_').to_string();
        match (f, target.as_ref(), args.as_slice()) {
            ("_&&_" | "_||_", None, [a, b]) => {
                if !a.accepts_bool() || !b.accepts_bool() {
                    return mismatch(self, format!("`{}` needs two bools, got {a} and {b}", op(f)));
                }
                Ok(Type::Bool)
            }
            ("!_", None, [a]) => {
                if !a.accepts_bool() {
                    return mismatch(self, format!("`!` needs a bool, got {a}"));
                }
                Ok(Type::Bool)
            }
            ("@not_strictly_false", None, [_]) => Ok(Type::Bool),
            ("_==_" | "_!=_", None, [a, b]) => {
                if !comparable(a, b) {
                    return mismatch(self, format!("cannot compare a {a} with a {b}"));
                }
                Ok(Type::Bool)
            }
            ("_<_" | "_<=_" | "_>_" | "_>=_", None, [a, b]) => {
                let ok = (a.is_numeric() && b.is_numeric()) || (matches!(a, Type::String | Type::Dyn) && matches!(b, Type::String | Type::Dyn));
                if !ok {
                    return mismatch(self, format!("cannot order a {a} and a {b}"));
                }
                Ok(Type::Bool)
            }
            ("_+_", None, [a, b]) => arithmetic(a, b, true).ok_or_else(|| self.err(node, format!("cannot add a {a} and a {b} (CEL does not mix int and double: write 2.0, or double(x))"))),
            ("_-_" | "_*_" | "_/_" | "_%_", None, [a, b]) => arithmetic(a, b, false).ok_or_else(|| self.err(node, format!("cannot apply `{}` to a {a} and a {b} (CEL does not mix int and double)", op(f)))),
            ("-_", None, [a]) if a.is_numeric() => Ok(a.clone()),
            ("_?_:_", None, [c, a, b]) => {
                if !c.accepts_bool() {
                    return mismatch(self, format!("the condition of `?:` must be a bool, got {c}"));
                }
                Ok(if a == b { a.clone() } else { Type::Dyn })
            }
            ("_[_]", None, [coll, idx]) => match coll {
                Type::List(t) if matches!(idx, Type::Int | Type::Dyn) => Ok((**t).clone()),
                Type::Map(t) if matches!(idx, Type::String | Type::Dyn) => Ok((**t).clone()),
                Type::Dyn => Ok(Type::Dyn),
                _ => mismatch(self, format!("cannot index a {coll} with a {idx}")),
            },
            ("@in", None, [_, coll]) => match coll {
                Type::List(_) | Type::Map(_) | Type::Dyn => {
                    self.known_value(&call.args)?;
                    Ok(Type::Bool)
                }
                _ => mismatch(self, format!("`in` needs a list or a map on its right, got {coll}")),
            },
            ("size", None, [a]) | ("size", Some(a), []) => match a {
                Type::String | Type::List(_) | Type::Map(_) | Type::Dyn => Ok(Type::Int),
                _ => mismatch(self, format!("size() of a {a}")),
            },
            ("contains" | "startsWith" | "endsWith" | "matches", Some(t), [a]) => {
                if !matches!(t, Type::String | Type::Dyn) || !matches!(a, Type::String | Type::Dyn) {
                    return mismatch(self, format!("{f}() works on strings, got {t} and {a}"));
                }
                Ok(Type::Bool)
            }
            ("lowerAscii" | "upperAscii" | "trim", Some(Type::String | Type::Dyn), []) => Ok(Type::String),
            ("int", None, [_]) => Ok(Type::Int),
            ("double", None, [_]) => Ok(Type::Double),
            ("string", None, [_]) => Ok(Type::String),
            ("bool", None, [_]) => Ok(Type::Bool),
            ("max" | "min", None, args) if !args.is_empty() && args.iter().all(Type::is_numeric) => Ok(args[0].clone()),
            _ => mismatch(self, format!("unknown function `{}` for these arguments", f.trim_matches('_'))),
        }
    }

    /// `'value' in x.field`, where the field's values are known: the value must be one.
    fn known_value(&self, args: &[IdedExpr]) -> Result<(), ExprError> {
        let [value, coll] = args else { return Ok(()) };
        let (Node::Literal(LiteralValue::String(v)), Node::Select(sel)) = (&value.expr, &coll.expr)
        else {
            return Ok(());
        };
        let v: &str = v.as_ref();
        match self
            .compiler
            .schema
            .vocab
            .iter()
            .find(|(field, _)| *field == sel.field)
        {
            Some((field, known)) if !known.contains(&v) => Err(self.err(
                value,
                format!(
                    "{v:?} is never among the {field}; they are {}",
                    known.join(", ")
                ),
            )),
            _ => Ok(()),
        }
    }

    fn hours_open(&mut self, node: &IdedExpr, args: &[IdedExpr]) -> Result<Type, ExprError> {
        let [arg] = args else {
            return Err(self.err(
                node,
                "hours.open takes one calendar name, as in hours.open(\"sales\")".into(),
            ));
        };
        if let Node::Literal(LiteralValue::String(name)) = &arg.expr {
            let name: &str = name.as_ref();
            if !self.compiler.schema.calendars.iter().any(|c| c == name) {
                let known = self.compiler.schema.calendars.join(", ");
                return Err(self.err(
                    arg,
                    format!(
                        "no calendar named {name:?} in [hours] (defined: {})",
                        if known.is_empty() { "none" } else { &known }
                    ),
                ));
            }
            return Ok(Type::Bool);
        }
        match self.check(arg)? {
            Type::String | Type::Dyn => Ok(Type::Bool),
            t => Err(self.err(arg, format!("hours.open takes a calendar name, got a {t}"))),
        }
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_column(source: &str, byte: usize) -> (u32, u32) {
    let byte = byte.min(source.len());
    let before = source.get(..byte).unwrap_or(source);
    let line = before.matches('\n').count() as u32 + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() as u32 + 1;
    (line, column)
}

fn comparable(a: &Type, b: &Type) -> bool {
    a == b
        || matches!(a, Type::Dyn | Type::Null)
        || matches!(b, Type::Dyn | Type::Null)
        || (a.is_numeric() && b.is_numeric())
        || matches!(
            (a, b),
            (Type::List(_), Type::List(_)) | (Type::Map(_), Type::Map(_))
        )
}

fn arithmetic(a: &Type, b: &Type, plus: bool) -> Option<Type> {
    match (a, b) {
        (Type::Dyn, _) | (_, Type::Dyn) => Some(Type::Dyn),
        (Type::Int, Type::Int) => Some(Type::Int),
        (Type::Double, Type::Double) => Some(Type::Double),
        (Type::String, Type::String) if plus => Some(Type::String),
        (Type::List(x), Type::List(_)) if plus => Some(Type::List(x.clone())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compiler() -> Compiler {
        let signals = Object::new("signals")
            .field("frustration", Type::Bool, "the visitor is frustrated")
            .field(
                "intents",
                Type::List(Box::new(Type::String)),
                "sales intents",
            )
            .field("sentiment", Type::Double, "-1 to 1")
            .field(
                "bot_fallbacks_in_row",
                Type::Int,
                "bot fallbacks at the end",
            );
        let budget = Object::new("lead.budget").field("amount", Type::Double, "stated budget");
        let lead = Object::new("lead")
            .field("budget", budget.into_type(), "budget")
            .field("score", Type::Double, "lead score");
        let account =
            Object::new("account").field("custom", Type::Map(Box::new(Type::Dyn)), "CRM fields");
        let root = Object::new("context")
            .field("signals", signals.into_type(), "")
            .field("lead", lead.into_type(), "")
            .field("account", account.into_type(), "")
            .field("hours", Object::new("hours").into_type(), "");
        Compiler::new(Schema {
            root,
            calendars: vec!["sales".into(), "support".into()],
            vocab: vec![("intents", &["pricing", "demo_request"])],
        })
    }

    fn bool_ty() -> Option<&'static Type> {
        Some(&Type::Bool)
    }

    #[test]
    fn accepts_well_typed_conditions() {
        let c = compiler();
        for src in [
            "signals.frustration",
            "signals.frustration && lead.budget.amount >= 10000",
            "'pricing' in signals.intents || signals.intents.exists(i, i == 'demo_request')",
            "signals.bot_fallbacks_in_row >= 2 && hours.open('support')",
            "signals.sentiment < -0.5 && size(signals.intents) > 0",
            "has(account.custom.tier) && account.custom.tier == 'enterprise'",
            "lead.score + 10.0 > 60.0",
        ] {
            let e = c.compile(src, bool_ty());
            assert!(e.is_ok(), "{src}: {e:?}");
        }
        assert_eq!(
            c.compile("lead.score * 2.0", Some(&Type::Double))
                .map(|e| e.ty().clone()),
            Ok(Type::Double)
        );
    }

    #[test]
    fn evaluates_in_a_scope_with_calendars() {
        let c = compiler();
        let e = c
            .compile(
                "signals.frustration && 'pricing' in signals.intents && hours.open('sales')",
                bool_ty(),
            )
            .expect("valid");
        let week: [&[&str]; 7] = [
            &["09:00-17:00"],
            &["09:00-17:00"],
            &["09:00-17:00"],
            &["09:00-17:00"],
            &["09:00-17:00"],
            &[],
            &[],
        ];
        let mut cals = BTreeMap::new();
        cals.insert(
            "sales".to_string(),
            crate::hours::Calendar::new("UTC", week, &[]).expect("calendar"),
        );
        let cals = Arc::new(cals);
        let signals = |frustrated: bool| {
            vec![(
                "signals".to_string(),
                val::object(vec![
                    ("frustration", val::bool(frustrated)),
                    ("intents", val::strings(&["pricing"])),
                ]),
            )]
        };
        let monday_noon: jiff::Timestamp = "2026-11-23T12:00:00Z".parse().expect("ts");
        let saturday: jiff::Timestamp = "2026-11-21T12:00:00Z".parse().expect("ts");
        assert_eq!(
            c.scope(signals(true), cals.clone(), monday_noon)
                .expect("scope")
                .eval_bool(&e),
            Ok(true)
        );
        assert_eq!(
            c.scope(signals(false), cals.clone(), monday_noon)
                .expect("scope")
                .eval_bool(&e),
            Ok(false)
        );
        assert_eq!(
            c.scope(signals(true), cals.clone(), saturday)
                .expect("scope")
                .eval_bool(&e),
            Ok(false)
        );
        // A value missing at run time is an evaluation error, not a panic.
        assert!(
            c.scope(Vec::new(), cals, monday_noon)
                .expect("scope")
                .eval_bool(&e)
                .is_err()
        );
    }

    #[test]
    fn rejects_mistakes_with_a_position_and_a_reason() {
        let c = compiler();
        let err = |src: &str| c.compile(src, bool_ty()).expect_err(src);
        let e = err("signals.frustratoin");
        assert_eq!((e.line, e.column), (1, 8));
        assert!(
            e.message.contains("no field `frustratoin`") && e.message.contains("frustration"),
            "{e}"
        );
        assert!(
            err("signal.frustration")
                .message
                .contains("unknown name `signal`")
        );
        assert!(
            err("signals.frustration > 3")
                .message
                .contains("cannot order a bool and a int")
        );
        assert!(
            err("lead.score + 1 > 2.0")
                .message
                .contains("does not mix int and double")
        );
        assert!(
            err("hours.open('night')")
                .message
                .contains("no calendar named \"night\"")
        );
        assert!(
            err("lead.score")
                .message
                .contains("is a double; a bool is needed")
        );
        assert!(
            err("signals.frustration &&")
                .message
                .contains("Syntax error")
        );
        assert!(
            err("frobnicate(signals.sentiment)")
                .message
                .contains("unknown function `frobnicate`")
        );
        let multi = err("signals.frustration &&\n  lead.budget.amout > 1.0");
        assert_eq!(multi.line, 2, "{multi}");
    }
}
