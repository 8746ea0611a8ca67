import {
  BROWN_EVAL_FRACTION,
  brownSplit,
  corpusStats,
  detokenizeBrownFile,
  detokenizeBrownSentence,
  loadBrownDocuments,
  loadBrownText,
  splitTrainEval,
} from '../../src/data/corpus';

describe('Brown corpus detokenization', () => {
  test('the first sentence of ca01', () => {
    const docs = loadBrownDocuments();
    expect(docs[0].id).toBe('ca01');
    expect(docs[0].category).toBe('news');
    expect(docs[0].paragraphs[0]).toBe(
      'The Fulton County Grand Jury said Friday an investigation of Atlanta\'s recent primary election produced "no evidence" that any irregularities took place.',
    );
    expect(loadBrownText()[0].startsWith('The Fulton County Grand Jury said Friday')).toBe(true);
  });

  test('quotes, commas and periods inside quotes, brackets, abbreviations at sentence end', () => {
    expect(
      detokenizeBrownSentence(
        "``/`` Only/rb a/at relative/jj handful/nn was/bedz received/vbn ''/'' ,/, the/at jury/nn said/vbd ./.",
      ),
    ).toBe('"Only a relative handful was received," the jury said.');
    expect(detokenizeBrownSentence('won/vbn by/in Ivan/np Allen/np Jr./np ./.')).toBe('won by Ivan Allen Jr.');
    expect(detokenizeBrownSentence("``/`` How's/wrb+bez Scotty/np ''/'' ?/. ?/.")).toBe('"How\'s Scotty?"');
    expect(detokenizeBrownSentence('Why/wrb do/do you/ppss worry/vb ?/. ?/.')).toBe('Why do you worry?');
    expect(detokenizeBrownSentence('to/to hear/vb ;/. ;/.')).toBe('to hear;');
    expect(detokenizeBrownSentence('(/( One/cd big/jj question/nn :/: If/cs so/rb )/) ./.')).toBe(
      '(One big question: If so).',
    );
    expect(detokenizeBrownSentence("getting/vbg more/ap '/' pro/jj '/' letters/nns than/in '/' con/jj '/' ./.")).toBe(
      "getting more 'pro' letters than 'con.'",
    );
    expect(detokenizeBrownSentence("only/rb 4'/nns 10''/nns ''/'' tall/jj ,/, 1/2''/nn ''/'' sq./jj")).toBe(
      'only 4\' 10" tall, 1/2" sq.',
    );
    expect(detokenizeBrownSentence('Teachers/nns --/-- men/nns --/-- came/vbd')).toBe('Teachers -- men -- came');
    expect(detokenizeBrownSentence('1/2/cd inch/nn')).toBe('1/2 inch');
  });

  test('a paragraph is one token stream; headlines are paragraphs of their own', () => {
    const file = [
      '',
      '',
      '\tThirty-three/cd-hl ',
      'Scotty/np did/dod not/* go/vb (/( back/rb ?/. ?/.',
      ')/) to/in school/nn ./.',
      '',
      '',
      "\t``/`` Hi/uh ''/'' ./.",
      '',
    ].join('\n');
    expect(detokenizeBrownFile(file)).toEqual(['Thirty-three', 'Scotty did not go (back?) to school.', '"Hi."']);
  });

  test("the whole corpus is plain text: no tags, no `` or '' quotes, no space before punctuation", () => {
    const docs = loadBrownText();
    expect(docs).toHaveLength(500);
    for (const d of docs) {
      expect(d).not.toMatch(/\/(?:at|nn|nns|vbd|in|np|jj|cc)(?:-tl|-hl)?(?=\s|$)/);
      expect(d).not.toMatch(/``|''/);
      expect(d).not.toMatch(/ [,.;?!)]/);
      expect(d).not.toMatch(/ {2}|^\s|\s$/);
    }
    const stats = corpusStats(docs);
    expect(stats.words).toBe(1017120);
    expect(stats.characters).toBeGreaterThan(5_900_000);
    expect(stats.characters).toBeLessThan(6_100_000);
    expect(loadBrownText({unit: 'paragraph'}).length).toBeGreaterThan(15000);
  });
});

describe('splitTrainEval', () => {
  const items = Array.from({length: 100}, (_, i) => `doc${i}`);

  test('is a deterministic partition that keeps the input order', () => {
    const a = splitTrainEval(items, 0.1, 7);
    expect(a.eval).toHaveLength(10);
    expect(a.train).toHaveLength(90);
    expect(new Set([...a.train, ...a.eval]).size).toBe(100);
    const order = (xs: string[]): number[] => xs.map((x) => Number(x.slice(3)));
    expect(order(a.train)).toEqual([...order(a.train)].sort((x, y) => x - y));
    expect(order(a.eval)).toEqual([...order(a.eval)].sort((x, y) => x - y));
    expect(splitTrainEval(items, 0.1, 7)).toEqual(a);
    expect(splitTrainEval(items, 0.1, 8).eval).not.toEqual(a.eval);
  });

  test('edge cases', () => {
    expect(splitTrainEval(items, 0, 1)).toEqual({train: items, eval: []});
    expect(splitTrainEval(items.slice(0, 3), 0.01, 1).eval).toHaveLength(1);
    expect(splitTrainEval([], 0.5, 1)).toEqual({train: [], eval: []});
    expect(() => splitTrainEval(items, 1, 1)).toThrow(RangeError);
    expect(() => splitTrainEval(items, -0.1, 1)).toThrow(RangeError);
  });

  test('the project split of the Brown corpus holds out 25 of 500 documents', () => {
    const {train, eval: held} = brownSplit();
    expect(held).toHaveLength(Math.round(500 * BROWN_EVAL_FRACTION));
    expect(train).toHaveLength(475);
    const all = new Set(loadBrownText());
    for (const d of [...train, ...held]) expect(all.has(d)).toBe(true);
    expect(held.some((d) => train.includes(d))).toBe(false);
  });
});
