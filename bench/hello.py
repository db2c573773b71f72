"""The ceiling: FastAPI's hello world, served by the same uvicorn, with the same settings, as the
jobq API in the submissions benchmark."""

from fastapi import FastAPI

app = FastAPI()


@app.get("/")
async def hello() -> dict[str, str]:
    return {"message": "Hello World"}
