"""One APIRouter per resource: scoring, models, health, metrics, admin."""
